"""From a checkpoint to translations: loading (`loaded_model`), greedy, beam and sampling
search (`search`), the `Translator` API, and the attention weights of a sentence
(`attention_weights`)."""
