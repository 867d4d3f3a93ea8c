import csv
from pathlib import Path


class Model:
    def __init__(self, data_dir, **kwargs):
        self._data_dir = Path(data_dir)
        self._pipeline = None

    def load(self):
        # Imported here so an import error shows up as a load failure with its traceback.
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        with open(self._data_dir / "reviews.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        texts = [row["text"] for row in rows]
        labels = [row["label"] for row in rows]
        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            LogisticRegression(C=10.0, max_iter=1000),
        )
        pipeline.fit(texts, labels)
        self._pipeline = pipeline

    def predict(self, model_input):
        text = model_input["text"]
        probabilities = self._pipeline.predict_proba([text])[0]
        classes = [str(label) for label in self._pipeline.classes_]
        by_label = {label: round(float(p), 4) for label, p in zip(classes, probabilities)}
        return {"label": max(by_label, key=by_label.get), "probabilities": by_label}
