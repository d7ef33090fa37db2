"""Teaching the captioner: the synthetic worlds and dataset loaders (data/), one training
script (train.py) and one evaluation script (evaluate.py)."""
