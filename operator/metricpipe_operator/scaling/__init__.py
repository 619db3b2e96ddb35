"""The ResourceManager: a pure scaling policy (`policy.decide`) and its I/O shell (`loop`)."""
