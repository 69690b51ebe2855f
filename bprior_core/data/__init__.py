"""The data: Fashion-MNIST (`fashion_mnist`), Oxford Flowers-102 (`flowers`), your own image
folders (`imagefolder`); a task as tensors (`tasks`), few-shot subsets (`subsets`), the labelled
pool and its validation split (`pool`), and data kept on the training device (`device`)."""
