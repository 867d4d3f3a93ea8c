"""The Docker labels this tool puts on the images and containers it makes, so it can find
them again (an unchanged directory's image, a model's containers)."""

LABEL_MODEL_NAME = "truss.model-name"
LABEL_CONTENT_HASH = "truss.content-hash"
LABEL_BUILD_KEY = "truss.build-key"
