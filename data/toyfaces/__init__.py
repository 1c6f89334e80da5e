"""The toy world (the embedded default): ``render`` draws a face from a code, ``dataset`` holds the
world's people and its Dataset."""
