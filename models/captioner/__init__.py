"""The captioner: backbones, VideoBERT fusion, the BART decoder, its tokenizer and the pipeline
that feeds it a video (decode -> features -> fusion -> text)."""
