#!/usr/bin/bash
for script in "${CANN_HOME}/ascend-toolkit/set_env.sh" "${CANN_HOME}/nnal/atb/set_env.sh" \
              "${CANN_HOME}/atb-models/set_env.sh" "${CANN_HOME}/mindie/set_env.sh"; do
    if [[ -f "$script" ]]; then source "$script"; fi
done
python_prefix="$(python3 -c 'import sys; print(sys.base_prefix)')"
export LD_LIBRARY_PATH="${python_prefix}/lib:${python_prefix}/lib64:${LD_LIBRARY_PATH:-}"
export MINDIE_LOG_LEVEL="${MINDIE_LOG_LEVEL:-INFO}" MINDIE_LLM_LOG_LEVEL="${MINDIE_LLM_LOG_LEVEL:-WARN}" \
       MINDIE_LLM_PYTHON_LOG_LEVEL="${MINDIE_LLM_PYTHON_LOG_LEVEL:-WARN}" ASCEND_GLOBAL_LOG_LEVEL="${ASCEND_GLOBAL_LOG_LEVEL:-3}" \
       ASCEND_SLOG_LEVEL="${ASCEND_SLOG_LEVEL:-WARN}" ATB_LOG_LEVEL="${ATB_LOG_LEVEL:-ERROR}" \
       ASDOPS_LOG_LEVEL="${ASDOPS_LOG_LEVEL:-ERROR}" ASCEND_GLOBAL_EVENT_ENABLE=0 ATB_STREAM_SYNC_EVERY_KERNEL_ENABLE=0
for part in MINDIE MIES_CERTS MINDIE_LLM MINDIE_LLM_PYTHON ATB ASDOPS OCK LOG; do
    export "${part}_LOG_TO_STDOUT=1" "${part}_LOG_TO_FILE=0"
done
for part in ASCEND_SLOG MINDIE_RT TORCH_AIE; do
    export "${part}_PRINT_TO_STDOUT=1" "${part}_PRINT_TO_FILE=0"
done
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
exec "./bin/$(basename "${BASH_SOURCE[0]}")_" "$@"
