"""Reference cmv coordinates of each modality; placeholder until the generator runs."""

COORDS: dict = {}
