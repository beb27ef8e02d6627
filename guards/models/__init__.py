"""Model loaders: each turns a model on disk (or a hub name) into a batch ``predict`` function."""
