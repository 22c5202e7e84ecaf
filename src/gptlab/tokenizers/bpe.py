"""Byte-level BPE: train your own GPT-2-style tokenizer from scratch, then encode at tiktoken speed.

How byte-pair encoding works
----------------------------
A tokenizer turns text into a list of integers. Byte-level BPE starts from the 256 possible
bytes of UTF-8 text as its first 256 tokens, so *any* string can be encoded (no "unknown
token") and decoding is exact: the tokens' bytes, joined, are the text's UTF-8 bytes.

Training then learns *merges*. It counts how often each pair of adjacent tokens occurs in the
corpus, takes the most frequent pair, say (b"t", b"h"), makes it a new token b"th" with the next
free id (256, 257, ...), replaces every occurrence of the pair by the new token, and repeats
until the vocabulary has the size asked for. Frequent words end up as single tokens, rare words
as a few pieces, and unseen text falls back to smaller pieces down to single bytes.

Two details come from GPT-2:

1. Pre-tokenization. Text is first cut into chunks by a regular expression (GPT2_SPLIT_PATTERN:
   contractions like "'ll", runs of letters with an optional leading space, runs of digits,
   runs of punctuation, whitespace). Merges never cross a chunk boundary, so " dog" and " dog."
   share the token " dog" instead of learning "dog." separately. It also means training only
   needs a count of each distinct chunk (a Counter of chunk -> occurrences): memory grows with
   the number of distinct words, not with the size of the corpus.
2. A special end-of-text token, "<|endoftext|>", placed between documents when preparing data.
   It gets the last id. The same characters inside a document are ordinary text unless
   `allow_special=True` is asked for, so a document cannot forge a document boundary.

Encoding applies the learned merges to each chunk of new text: while some adjacent pair in the
chunk is a learned merge, merge the pair with the lowest rank (the one whose token has the
smallest id, i.e. was learned earliest). `BPETokenizer.encode_slow` does exactly this in plain
Python, to be read; `BPETokenizer.encode` gives the same ids through a `tiktoken.Encoding` built
from the same vocabulary, which is what real workloads use.

Training efficiently
--------------------
Recounting every pair after every merge would cost O(corpus) per merge. Instead the trainer
keeps, for each pair, its total count and the set of distinct chunks that contain it. A merge
only touches the chunks that contain the merged pair: for each of them, the pairs of the old
token sequence are subtracted and the pairs of the new one added. The most frequent pair is
found with a heap of (-count, pair) entries, kept lazily: a merge pushes only the pairs it
created (they hold the new token, and only they can grow); a pair that lost occurrences keeps
its old, too-high entry, which is pushed back at the true count when it reaches the top. Every
pair thus has an entry at least as high as its count, so the first entry that matches its
pair's count is the most frequent pair. Likewise a chunk stays listed under pairs it no longer
holds; merging it again changes nothing and is skipped. Ties go to the smallest pair (lowest
left id, then lowest right id), which makes training deterministic. On the 100 MB Wikipedia
corpus (90 MB of it) an 8,192-token vocabulary takes about a minute (BENCHMARKS.md).
"""

from __future__ import annotations

import base64
import heapq
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

import regex
import tiktoken
from tqdm import tqdm

from gptlab.errors import GptlabError

# The pre-tokenization pattern of OpenAI's GPT-2 (tiktoken's "gpt2" / r50k encodings).
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
END_OF_TEXT = "<|endoftext|>"
N_BYTE_TOKENS = 256
# The smallest vocabulary: the 256 byte tokens plus the end-of-text token.
MIN_VOCAB_SIZE = N_BYTE_TOKENS + 1

Pair = tuple[int, int]


class Vocabulary:
    """Token id -> bytes, starting from the 256 single bytes and growing one merge at a time.

    Token i < 256 is the single byte i. A merge (left, right) makes the token whose bytes are
    left's bytes followed by right's. In rare cases two different pairs spell the same bytes
    (b"ab" + b"c" and b"a" + b"bc"); the second then maps to the existing token instead of
    adding a duplicate, so every token's bytes are unique, as tiktoken requires.
    """

    def __init__(self) -> None:
        self.tokens: list[bytes] = [bytes([b]) for b in range(N_BYTE_TOKENS)]
        self.ids: dict[bytes, int] = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def add_merge(self, left: int, right: int) -> int:
        """The id of the token made by merging `left` and `right` (new unless its bytes exist)."""
        token = self.tokens[left] + self.tokens[right]
        if token not in self.ids:
            self.ids[token] = len(self.tokens)
            self.tokens.append(token)
        return self.ids[token]


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each occurrence of `pair` in `ids` by `new_id`, scanning left to right.

    Occurrences do not overlap: merging (a, a) in [a, a, a] gives [aa, a].
    """
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def count_chunks(
    documents: Iterable[str], pattern: str = GPT2_SPLIT_PATTERN, progress: bool = True
) -> tuple[Counter[str], int]:
    """(chunk -> number of occurrences, number of documents) over a stream of documents."""
    split = compile_split_pattern(pattern)
    chunk_counts: Counter[str] = Counter()
    n_documents = 0
    for document in tqdm(documents, desc="counting chunks", unit="doc", disable=not progress):
        chunk_counts.update(split.findall(document))
        n_documents += 1
    return chunk_counts, n_documents


def _pair_counts(ids: Sequence[int]) -> Counter[Pair]:
    return Counter(zip(ids, ids[1:], strict=False))


def _pop_most_frequent(
    heap: list[tuple[int, Pair]], pair_counts: Mapping[Pair, int]
) -> Pair | None:
    """Pop heap entries until one matches its pair's current count; an entry above it (the pair
    lost occurrences since) goes back at the current count."""
    while heap:
        negative_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count == -negative_count:
            return pair
        if count > 0:
            heapq.heappush(heap, (-count, pair))
    return None


def learn_merges(
    chunk_counts: Mapping[str, int], max_tokens: int, progress: bool = True
) -> tuple[list[Pair], int]:
    """Merge the most frequent adjacent pair until the vocabulary holds `max_tokens` tokens.

    Returns the merges in the order they were learned, and how many tokens the training text
    has once they are all applied. Stops early (with fewer tokens) when no chunk has two tokens
    left to merge.
    """
    # Each distinct chunk is a "word": its token ids (bytes at first) and how often it occurs.
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    word_counts = list(chunk_counts.values())

    # pair -> total occurrences in the corpus, and pair -> indices of the words containing it.
    pair_counts: Counter[Pair] = Counter()
    words_with_pair: defaultdict[Pair, set[int]] = defaultdict(set)
    for w, (word, count) in enumerate(zip(words, word_counts, strict=True)):
        for pair, n in _pair_counts(word).items():
            pair_counts[pair] += n * count
            words_with_pair[pair].add(w)

    # A max-heap by count (negated for heapq's min-heap); ties pop the smallest pair first.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    vocab = Vocabulary()
    merges: list[Pair] = []
    bar = tqdm(
        total=max(max_tokens - len(vocab), 0),
        desc="learning merges",
        unit="merge",
        disable=not progress,
    )
    while len(vocab) < max_tokens:
        pair = _pop_most_frequent(heap, pair_counts)
        if pair is None:
            break
        n_before = len(vocab)
        new_id = vocab.add_merge(*pair)
        merges.append(pair)
        bar.update(len(vocab) - n_before)  # 0 when the pair spells an existing token

        # Only the words containing the pair change: subtract their old pairs, add the new ones.
        created_pairs = set()
        for w in words_with_pair.pop(pair):
            old_word = words[w]
            new_word = merge_pair(old_word, pair, new_id)
            if len(new_word) == len(old_word):
                continue  # listed under the pair, but an earlier merge took its occurrences
            words[w] = new_word
            count = word_counts[w]
            for p in zip(old_word, old_word[1:], strict=False):
                pair_counts[p] -= count
            for p in zip(new_word, new_word[1:], strict=False):
                pair_counts[p] += count
                if new_id in p:  # only pairs holding the new token can be new or grow
                    created_pairs.add(p)
                    words_with_pair[p].add(w)
        del pair_counts[pair]
        for p in created_pairs:
            heapq.heappush(heap, (-pair_counts[p], p))
    bar.close()
    n_training_tokens = sum(
        len(word) * count for word, count in zip(words, word_counts, strict=True)
    )
    return merges, n_training_tokens


def train_bpe(documents: Iterable[str], vocab_size: int, progress: bool = True) -> BPETokenizer:
    """Train a byte-level BPE tokenizer of `vocab_size` tokens (including "<|endoftext|>").

    Warns and returns a smaller vocabulary when the corpus runs out of pairs to merge first.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise GptlabError(
            f"vocab size {vocab_size} is too small: a byte-level BPE needs at least {MIN_VOCAB_SIZE} "
            f"tokens ({N_BYTE_TOKENS} bytes + {END_OF_TEXT}); ask for more"
        )
    chunk_counts, n_documents = count_chunks(documents, progress=progress)
    if not chunk_counts:
        raise GptlabError(
            f"the training corpus is empty ({n_documents} documents, no text): point it at a source with text"
        )
    merges, n_training_tokens = learn_merges(
        chunk_counts, max_tokens=vocab_size - 1, progress=progress
    )
    tokenizer = BPETokenizer(merges)
    if tokenizer.vocab_size < vocab_size:
        warnings.warn(
            f"the corpus ran out of pairs to merge: the vocabulary has {tokenizer.vocab_size} tokens, "
            f"not the {vocab_size} asked for (train on more text for a larger one)",
            stacklevel=2,
        )
    n_bytes = sum(len(chunk.encode("utf-8")) * count for chunk, count in chunk_counts.items())
    tokenizer.metadata = {
        "requested_vocab_size": vocab_size,
        "documents": n_documents,
        "distinct_chunks": len(chunk_counts),
        "bytes": n_bytes,
        "tokens": n_training_tokens,
    }
    return tokenizer


# Text a split pattern must cut into pieces that join back to it exactly: letters, digits,
# punctuation, runs of spaces, tabs and newlines, accents, CJK, an emoji and a contraction.
SPLIT_PROBE = "Hello, world!  It's 2024:\tnaïve café\n\n日本語 🙂 x=1+2;  end "


def bad_pattern(pattern: object, problem: str) -> GptlabError:
    return GptlabError(
        f"the tokenizer's split pattern {pattern!r} {problem}; fix its 'pattern' field or train "
        "the tokenizer again"
    )


def compile_split_pattern(pattern: object) -> regex.Pattern:
    """The pre-tokenization regex, refused unless it compiles, matches no empty piece and cuts
    a probe text into pieces that join back to it (one that skips characters, such as
    "[a-z]+", would silently drop text; an empty one makes tiktoken panic)."""
    if not isinstance(pattern, str) or not pattern:
        raise bad_pattern(pattern, "is empty")
    try:
        split = regex.compile(pattern)
    except regex.error as exc:
        raise bad_pattern(pattern, f"is not a valid regular expression ({exc})") from None
    pieces = [match.group(0) for match in split.finditer(SPLIT_PROBE)]
    if "" in pieces:
        raise bad_pattern(pattern, "matches empty pieces")
    if "".join(pieces) != SPLIT_PROBE:
        raise bad_pattern(pattern, "drops text (its pieces do not join back to the text)")
    return split


class BPETokenizer:
    """A trained byte-level BPE tokenizer: the Tokenizer interface of gptlab.tokenizers.base.

    Ids 0-255 are the single bytes, 256 onwards the merged tokens in the order they were
    learned, and the last id is "<|endoftext|>". `encode` runs through tiktoken;
    `encode_slow` is the readable reference implementation giving the same ids.
    """

    name = "bpe"

    def __init__(
        self,
        merges: Sequence[Pair],
        pattern: str = GPT2_SPLIT_PATTERN,
        metadata: dict | None = None,
    ):
        self.merges = [tuple(pair) for pair in merges]
        self.pattern = pattern
        self.metadata = metadata or {}
        self._vocab = Vocabulary()
        # A merge's rank is the id of the token it makes: lower ids were learned earlier.
        self._merge_ranks: dict[Pair, int] = {}
        for left, right in self.merges:
            if not (0 <= left < len(self._vocab) and 0 <= right < len(self._vocab)):
                raise GptlabError(
                    f"BPE merge ({left}, {right}) refers to a token not defined before it: the "
                    "tokenizer file is damaged; train it again"
                )
            self._merge_ranks[(left, right)] = self._vocab.add_merge(left, right)
        self.eot_id = len(self._vocab)
        self.vocab_size = self.eot_id + 1
        self._split = compile_split_pattern(pattern)
        try:
            self._encoding = self.to_tiktoken()
        except ValueError as exc:  # tiktoken's regex engine (fancy-regex) reads it otherwise
            raise bad_pattern(pattern, f"is not valid for tiktoken ({exc})") from None
        probe = self._encoding.decode(self.encode(SPLIT_PROBE))
        if probe != SPLIT_PROBE:
            raise bad_pattern(pattern, "does not round-trip a probe text through tiktoken")

    @property
    def tokens(self) -> list[bytes]:
        """The bytes of every token but "<|endoftext|>", indexed by id."""
        return self._vocab.tokens

    @property
    def encoding(self) -> tiktoken.Encoding:
        """The tiktoken Encoding `encode` uses (for batch encoding at full speed)."""
        return self._encoding

    def to_tiktoken(self, name: str | None = None) -> tiktoken.Encoding:
        """Export as a tiktoken Encoding: each token's bytes ranked by its id, as merges priority."""
        return tiktoken.Encoding(
            name or f"gptlab-bpe-{self.vocab_size}",
            pat_str=self.pattern,
            mergeable_ranks=self._vocab.ids,
            special_tokens={END_OF_TEXT: self.eot_id},
            explicit_n_vocab=self.vocab_size,
        )

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        if allow_special:
            return self._encoding.encode(text, allowed_special="all")
        return self._encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._encoding.encode_ordinary_batch(list(texts))

    def decode(self, ids: Iterable[int]) -> str:
        return self._encoding.decode(list(ids))

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self._encoding.decode_bytes(list(ids))

    def encode_slow(self, text: str, allow_special: bool = False) -> list[int]:
        """The reference encoder in plain Python: same ids as `encode`, far slower."""
        if not allow_special:
            return [i for chunk in self._split.findall(text) for i in self.encode_chunk(chunk)]
        ids: list[int] = []
        for k, part in enumerate(text.split(END_OF_TEXT)):
            if k > 0:
                ids.append(self.eot_id)
            ids.extend(self.encode_slow(part))
        return ids

    def encode_chunk(self, chunk: str) -> list[int]:
        """Apply the learned merges to one pre-tokenized chunk, lowest rank first."""
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pairs = zip(ids, ids[1:], strict=False)
            pair = min(pairs, key=lambda p: self._merge_ranks.get(p, self.vocab_size))
            if pair not in self._merge_ranks:
                break  # no adjacent pair is a learned merge: the chunk is fully merged
            ids = merge_pair(ids, pair, self._merge_ranks[pair])
        return ids

    def to_dict(self) -> dict:
        """A JSON-ready description: the merges (the source of truth), plus each token's bytes
        in base64 (as in tiktoken's .tiktoken files, rank = id) for people and other tools."""
        return {
            "type": "bpe",
            "pattern": self.pattern,
            "special_tokens": {END_OF_TEXT: self.eot_id},
            "merges": [list(pair) for pair in self.merges],
            "tokens": [base64.b64encode(token).decode("ascii") for token in self.tokens],
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        try:
            merges = [(int(left), int(right)) for left, right in d["merges"]]
            pattern = str(d.get("pattern", GPT2_SPLIT_PATTERN))
        except (KeyError, TypeError, ValueError):
            raise GptlabError(
                "BPE tokenizer file has no valid 'merges' list of [left, right] ids"
            ) from None
        tokenizer = cls(merges, pattern=pattern, metadata=d.get("metadata"))
        # The stored token bytes are redundant with the merges; a mismatch means a damaged file.
        stored_tokens = d.get("tokens")
        if stored_tokens is not None and stored_tokens != tokenizer.to_dict()["tokens"]:
            raise GptlabError(
                "BPE tokenizer file is inconsistent (its tokens do not follow from its merges); train it again"
            )
        stored_eot = d.get("special_tokens", {}).get(END_OF_TEXT, tokenizer.eot_id)
        if stored_eot != tokenizer.eot_id:
            raise GptlabError(
                f"BPE tokenizer file puts {END_OF_TEXT} at {stored_eot}, expected {tokenizer.eot_id}"
            )
        return tokenizer
