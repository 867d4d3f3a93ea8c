"""What a model directory is, as data two machines can compare: the tree manifest (and, in
later issues, the patches between two manifests).

Standard library only: it ships inside every replica's server bundle.
"""
