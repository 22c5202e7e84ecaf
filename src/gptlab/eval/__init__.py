"""Evaluation: perplexity and bits-per-byte on text or a corpus of documents, accuracy on HellaSwag.

For example `evaluate_text(model, tokenizer, text).perplexity` or
`evaluate_hellaswag(model, tokenizer, items, limit=500)["acc_norm"]`.
"""

from gptlab.eval.bits_per_byte import CorpusScore, score_documents, score_file
from gptlab.eval.hellaswag import (
    evaluate_hellaswag,
    hellaswag_training_eval,
    load_hellaswag,
    read_hellaswag,
)
from gptlab.eval.perplexity import (
    PerplexityResult,
    evaluate_prepared,
    evaluate_text,
    evaluate_tokens,
)

__all__ = [
    "CorpusScore",
    "PerplexityResult",
    "evaluate_hellaswag",
    "evaluate_prepared",
    "evaluate_text",
    "evaluate_tokens",
    "hellaswag_training_eval",
    "load_hellaswag",
    "read_hellaswag",
    "score_documents",
    "score_file",
]
