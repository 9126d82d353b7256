"""Exporting a checkpoint as a Hugging Face Marian model (`marian`) or a CTranslate2 model (`ct2`).

Both runtimes implement the paper's encoder-decoder, but not bit-for-bit with our conventions;
each difference is handled here, and the export is checked against our own forward pass before
it is moved into place (see docs/export.md):

- Normalisation. Marian is post-norm only, so pre-norm (`norm_first`) checkpoints are refused
  for Hugging Face; CTranslate2 takes both.
- Positions. Ours are the paper's interleaved table (sin at even, cos at odd features); Marian's
  `MarianSinusoidalPositionalEmbedding` puts every sin first, then every cos. Positions are
  fixed, so the Marian export applies one permutation P (even features, then odd) to the
  d_model axis of every weight: embedding columns, LayerNorm gamma/beta, input columns of the
  q/k/v and fc1 projections, output rows (and biases) of out_proj and fc2. Sums, dot products,
  LayerNorm statistics and the logits (h P . E P) are unchanged, so the permuted model
  computes exactly our function. CTranslate2 takes the position table as a weight, so it gets
  our table and our weights unpermuted.
- Decoder start. Ours is BOS (id 2), whose embedding was trained as the start symbol. Marian
  models usually start from PAD; the Marian config here says `decoder_start_token_id=2`.
  CTranslate2's stock Marian converter assumes start = PAD = last id with a zero embedding
  (docs/design.md §3); we do not go through it but build the CTranslate2 spec from our weights,
  with `decoder_start_token` = our BOS piece and `add_source_eos` (our sources end with EOS).
- Searching. Ours never emits PAD or BOS (`suppress_tokens`), forces EOS at the length limit
  (`forced_eos_token_id`) and stops a beam when K hypotheses have finished
  (`early_stopping=True`). The length penalties differ in form: ours is GNMT's
  ((5 + len) / 6) ** alpha, Hugging Face and CTranslate2 divide by len ** alpha, so beam
  results agree exactly at alpha = 0 (and greedy results always).

`transformers`, `safetensors` and `ctranslate2` are the optional 'export' extra, imported only
when an export runs. torch is imported inside functions too: the command line imports these
modules to build its parser, and other commands must not pay for loading torch.
"""
