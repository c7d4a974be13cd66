"""The release flow both faces call: one `Release` object (project, selection, engine, registry,
report) builds, smoke-tests, rehearses, runs CI jobs, publishes, merges, promotes, discards and prunes; the faces
parse their arguments, call it and print what it returns. Credentials are read here, once.
May import everything below the faces (model to ui); never a face."""
