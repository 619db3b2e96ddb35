"""Development-only local stack: real servers as local processes (see docs/local-stack.md)."""
