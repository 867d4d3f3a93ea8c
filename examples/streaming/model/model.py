import time


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    def predict(self, model_input):
        # Returning a generator makes the server stream: each yielded string is sent to the
        # client as soon as it exists, the way an LLM streams tokens.
        text = model_input.get("text", "streaming one word at a time")
        delay = float(model_input.get("delay", 0.05))
        for index, word in enumerate(text.split()):
            if index:
                time.sleep(delay)
            yield word if index == 0 else f" {word}"
        yield "\n"
