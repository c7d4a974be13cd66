// Evaluates GitHub Actions expressions with GitHub's own expression library (@actions/expressions):
// `node github_expressions.mjs LIBRARY` (the library's dist/index.js) reads
// [{"expr": "...", "context": {...}}] as JSON on stdin and prints the results as a JSON list.
// Status functions (always, cancelled, failure, success) answer from context.status.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const { Evaluator, Lexer, Parser, data } = await import(pathToFileURL(process.argv[2]).href);

const contexts = ["github", "inputs", "vars", "secrets", "env", "needs", "matrix", "steps", "job", "runner", "strategy"];
const statusFunctions = ["always", "cancelled", "failure", "success"];
const cases = JSON.parse(readFileSync(0, "utf8"));
const results = cases.map(({ expr, context }) => {
  const lexed = new Lexer(expr).lex();
  const infos = statusFunctions.map((name) => ({ name, minArgs: 0, maxArgs: 0 }));
  const tree = new Parser(lexed.tokens, contexts, infos).parse();
  const status = (context.status || {});
  const functions = new Map(statusFunctions.map((name) => [name.toLowerCase(), {
    name, minArgs: 0, maxArgs: 0, call: () => new data.BooleanData(Boolean(status[name])),
  }]));
  const value = JSON.parse(JSON.stringify(context), data.reviver);
  const result = new Evaluator(tree, value, functions).evaluate();
  return JSON.parse(JSON.stringify(result, data.replacer));
});
process.stdout.write(JSON.stringify(results));
