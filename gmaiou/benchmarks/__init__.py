"""Side-by-side speed benchmarks behind ``gmaiou bench``."""
