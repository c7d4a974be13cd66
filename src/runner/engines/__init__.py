"""Who executes the plan: thin translations of stages into Docker/BuildKit builds and Dagger
containers. May import everything below (model, compose, verify, release), never a face."""
