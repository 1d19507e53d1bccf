"""The dataset tools, apart from what training and evaluation read (data/): the generated
shapes dataset (attngan-make-shapes), one's own images and captions as a dataset
(attngan-make-dataset), the data check (attngan-check-data) and the layout they write."""
