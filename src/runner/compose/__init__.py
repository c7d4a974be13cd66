"""How an image is composed: the stage model, the recipes of pack/ and their kit, the project that
joins them with the matrix, the stage plan and its Dockerfile export. May import runner.model only."""
