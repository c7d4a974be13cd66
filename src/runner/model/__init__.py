"""What is built and what it is called: matrix.yaml and its schema, targets and selections, image
names, the consumer catalog, and the user-error type. Imports nothing of runner outside runner.model."""
