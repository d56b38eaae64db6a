"""Device meshes, batch sharding and multi-process start-up: shared by training and evaluation."""
