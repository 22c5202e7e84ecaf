"""Tokenizers: text <-> token ids.

base.py   the Tokenizer interface, GPT-2 (tiktoken) and character-level tokenizers, JSON files
bpe.py    the from-scratch byte-level BPE trainer and its tokenizer (exported to tiktoken)
"""
