"""Storage for regtool serve: a small driver interface, two drivers, and the registry's layout over them."""
