"""A conversation about one document, each turn reusing the KV cache of the turns before.

The document goes into the first user message, before the first question:
every chat template has a user role (not all have a system role, and some
models read a system message as instructions rather than material), and it
is how ``generate --chat`` and OpenAI-API clients send a document too.

Each turn sends the whole conversation through the model's chat template;
llama-cpp-python keeps the longest common prefix of the new prompt with the
tokens already in the KV cache, so a turn evaluates only what is new (its
question, and the previous answer's last token). ``pylampe.Llama`` sets
LaMPE's reference length L to the whole new prompt first: the cached keys
sit at their exact positions, so the new mapping applies to them without
re-evaluating them. (Keys of layers >= 1 were computed by the earlier turns
under their own L: a turn with reuse is close to, not identical with, a
cold evaluation of the same conversation once it is longer than the
trained context; inside it, attention is upstream's and reuse is exact.)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import llama_cpp
from llama_cpp import llama_chat_format

from .metered import MeteredLlama

Messages = List[Dict[str, str]]

# Two first questions that share nothing: their prompts' common prefix is the
# part of the first turn that does not depend on the question.
_PROBES = ("A", "1")


def chat_prompt_tokens(llm: llama_cpp.Llama, messages: Messages) -> List[int]:
    """The tokens ``create_chat_completion`` evaluates for ``messages`` with the model's own
    chat template (``chat_format="chat_template.default"``), ready for the assistant's answer.

    Raises:
        ValueError: the model has no chat template.
    """
    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        raise ValueError("the model has no chat template")

    def text(token: int) -> str:
        return llm.detokenize([token], special=True).decode(errors="replace")

    result = llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos())
    )(messages=messages)
    return llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


def question_prefix(llm: llama_cpp.Llama, chat: Callable[[str], Messages]) -> List[int]:
    """The tokens of ``chat(question)`` that do not depend on the question (two probes' common prefix)."""
    a, b = (chat_prompt_tokens(llm, chat(q)) for q in _PROBES)
    return a[: llama_cpp.Llama.longest_token_prefix(a, b)]


def document_prefix(llm: llama_cpp.Llama, document: str, before: Messages = ()) -> List[int]:
    """The tokens of a chat up to the question, where ``before`` (system messages) is followed by
    a first user message made of ``document``, a blank line and the question: how
    ``Conversation``, ``generate --chat`` and API clients send a document."""
    return question_prefix(llm, lambda q: [*before, {"role": "user", "content": f"{document}\n\n{q}"}])


def completion_prefix(llm: llama_cpp.Llama, document: str, prompt_tokens: Sequence[int]) -> List[int]:
    """The tokens of a completion prompt (``prompt_tokens``) that are ``document`` alone: its tokens
    as a prompt of their own, up to where the text that follows it changes them."""
    alone = llm.tokenize(document.encode("utf-8"), add_bos=True, special=True)
    return alone[: llama_cpp.Llama.longest_token_prefix(alone, prompt_tokens)]


def read_prefix(llm: llama_cpp.Llama, tokens: Sequence[int]) -> None:
    """Evaluate ``tokens`` as a prompt of their own (with a pylampe.Llama: L = their count), so
    that a prompt continuing them evaluates only its own tokens."""
    # generate() evaluates the prefix as a prompt (with MeteredLlama's progress meter and context
    # check); its first sampled token is dropped unevaluated.
    generated = llm.generate(tokens, temp=0.0)
    try:
        next(generated, None)  # None: a MeteredLlama interrupted after the prompt
    finally:
        generated.close()


class Conversation:
    """The messages of a chat about ``document`` and the model that answers them.

    ``llm`` must format chats with the model's template
    (``chat_format="chat_template.default"``).
    """

    def __init__(self, llm: MeteredLlama, document: Optional[str] = None,
                 system: Optional[str] = None):
        self.llm = llm
        self.document = document if document and document.strip() else None
        self.opening: Messages = [{"role": "system", "content": system}] if system else []
        self.messages: Messages = list(self.opening)

    def first_content(self, question: str) -> str:
        """The first user message: the document, a blank line, the question."""
        return question if self.document is None else f"{self.document}\n\n{question}"

    def prefix_tokens(self) -> List[int]:
        """The first turn's tokens that come before its question (the document, formatted)."""
        return question_prefix(self.llm, lambda q: self._with_question(self.opening, q))

    def read_document(self) -> int:
        """Evaluate ``prefix_tokens()`` now, so that the first question only costs its own
        tokens; returns their number. L is their count (the first question sets its own).
        """
        prefix = self.prefix_tokens()
        read_prefix(self.llm, prefix)
        return len(prefix)

    def ask(self, question: str, **sampling: Any) -> Iterator[str]:
        """Stream the answer to ``question``; the turn joins the conversation once it has
        produced text (an interrupted answer is kept as it stands).

        Raises:
            ContextOverflowError: the conversation plus ``max_tokens`` does not fit;
                the conversation is unchanged.
        """
        messages = self._with_question(self.messages, question)
        before = self.llm.last_turn
        stream = self.llm.create_chat_completion(messages=messages, stream=True, **sampling)
        answer: List[str] = []
        try:
            for chunk in stream:
                piece = chunk["choices"][0]["delta"].get("content") or ""
                if piece:
                    answer.append(piece)
                    yield piece
        finally:
            stream.close()
            turn = self.llm.last_turn
            # A turn counts once the model answered (an empty answer too: it stopped at once).
            if answer or (turn is not before and turn is not None and turn.generated_tokens > 0):
                self.messages = messages + [{"role": "assistant", "content": "".join(answer)}]

    def reset(self) -> None:
        """Forget the questions and answers, keep the document (its KV cache stays)."""
        self.messages = list(self.opening)

    @property
    def turns(self) -> int:
        return sum(m["role"] == "user" for m in self.messages)

    def _with_question(self, messages: Messages, question: str) -> Messages:
        first = not any(m["role"] == "user" for m in messages)
        content = self.first_content(question) if first else question
        return messages + [{"role": "user", "content": content}]


def opening_tokens(llm: llama_cpp.Llama, document: Optional[str], system: Optional[str] = None) -> List[int]:
    """``Conversation(llm, document, system).prefix_tokens()`` with any llama_cpp.Llama
    (a vocab-only one will do)."""
    return Conversation(llm, document, system).prefix_tokens()  # type: ignore[arg-type]
