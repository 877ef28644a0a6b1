"""Independent float64 NumPy reference of LaMPE, written from docs/lampe-algorithm.md."""
