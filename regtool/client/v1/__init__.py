"""The registry v1 API and its serial jobs: the parent-chain pull, push, and tag/search listings."""
