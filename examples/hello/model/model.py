class Model:
    def __init__(self, **kwargs):
        self._greeting = None

    def load(self):
        # Runs once, before the server reports ready. Real models load weights here.
        self._greeting = "Hello"

    def predict(self, model_input):
        name = model_input.get("name", "world") if isinstance(model_input, dict) else "world"
        return {"greeting": f"{self._greeting}, {name}!"}
