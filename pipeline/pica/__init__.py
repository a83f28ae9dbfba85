"""Unsupervised IRM's linear estimator, PICA (Yotamnor/UIRM), and its study (synthetic and
Colored MNIST pixels with a linear probe); the report draws its table and figure."""
