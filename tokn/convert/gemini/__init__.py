"""Google Gemini (``generateContent``, and Code Assist's envelope of it) <-> OpenAI chat.

Pure, no I/O. Chat is the hub (see :mod:`tokn.convert`), and this package has
the same shapes as the other formats, so wiring it in is one registration:

* requests: :func:`gemini_request_to_chat` (``to_chat``),
  :func:`chat_request_to_gemini` (``from_chat``);
* responses: :func:`gemini_response_to_chat`, :func:`chat_response_to_gemini`,
  :func:`usage_of_response` for ``extract_usage``, :func:`observe_chunk` for
  a stream converter's model/usage watch (``response``);
* streams: :class:`GeminiToChatStream`, :class:`ChatToGeminiStream`,
  :class:`ChatToCodeAssistStream` (``stream``; the Gemini-reading stage
  unwraps Code Assist events itself);
* URLs, the Code Assist envelope, ``countTokens``, ``models.list`` and error
  bodies: ``wire``; the OpenAPI schema subset: ``schema``.

Sources: the Gemini API reference (https://ai.google.dev/api/generate-content),
``google.genai`` 2.x (``types.py``; ``models.py`` ``*_to_mldev``) and the
Gemini CLI 0.61 bundle (``code_assist/converter.ts``, ``geminiChat.ts``).

Wire facts this module relies on:

* Google parses proto JSON, so every field may come camelCase or snake_case
  (the Python SDK sends ``inlineData: {"mime_type": ...}`` and
  ``thinkingConfig: {"thinking_budget": ...}``); everything here reads both
  (:func:`field`) and writes camelCase.
* The model and the stream switch are not in Google's body (they are in the
  URL, ``models/{model}:streamGenerateContent?alt=sse``, or in the Code
  Assist envelope). Converted bodies carry them in the keys ``model`` and
  ``stream``; :func:`split_target` takes them out before a body goes upstream.

Choices made here:

* **System prompt**: each ``systemInstruction`` part is one chat system
  message; all chat system/developer messages (wherever they are) become
  ``systemInstruction`` parts.
* **Thoughts and signatures**: ``thought: true`` parts are chat
  ``reasoning_content``. A ``thoughtSignature`` on a thought, text or empty
  part is the message's ``reasoning_signature`` (the field the Anthropic
  converter uses for thinking signatures); going back it goes on the thought
  part, or on the text part when there is no reasoning text. A signature on
  an empty part is dropped in requests (Gemini rejects empty text parts and
  does not check non-call signatures).
* **Tool-call ids** (Gemini matches responses by name; ids are optional):
  the chat id is the Gemini ``functionCall.id``, or ``gcall_<turn>_<part>``
  when there is none (stable, so upstream prompt caches keep hitting), plus
  ``__sig_<signature>`` (URL-safe base64) when the call carries a
  ``thoughtSignature`` -- chat clients echo ids, and Gemini 3 rejects a call
  without its signature. Going back, ``gcall_`` ids are dropped, the
  signature is restored, and a tool message's function name is found from
  the assistant call it answers. ``extra_content.google.thought_signature``
  on a chat tool call (Google's OpenAI-compatible API) is read too.
* **Tool results**: ``{"output": text}`` <-> text; any other response object
  <-> its compact JSON. Orphan function responses (no call in the preceding
  model turn) become user text: chat upstreams reject unmatched tool messages.
* **Tools**: ``parametersJsonSchema`` passes through; ``parameters`` (OpenAPI
  subset) is converted (:mod:`tokn.convert.gemini_schema`); chat tools go to
  Gemini as ``parametersJsonSchema`` (what the Gemini CLI itself sends).
  Built-in tools (``googleSearch``, ``codeExecution`` ...) have no chat form
  and are dropped. ``functionCallingConfig``: AUTO/VALIDATED <-> ``auto``,
  NONE <-> ``none``, ANY <-> ``required``, ANY with one allowed name <-> a
  named ``tool_choice``.
* **Generation config**: temperature, topP, maxOutputTokens, stopSequences,
  candidateCount (``n``), seed, penalties, logprobs, JSON output
  (``responseMimeType`` + ``responseJsonSchema`` / ``responseSchema``) map
  1:1. ``topK`` is dropped towards chat (OpenAI rejects ``top_k``; the
  Gemini CLI always sends 64) and read from a chat ``top_k`` extension.
* **Thinking**: ``thinkingLevel`` <-> ``reasoning_effort`` by name;
  ``thinkingBudget`` 0 -> ``none``, <1024 ``minimal``, <4096 ``low``,
  <16384 ``medium``, else ``high``; -1 (dynamic) sets nothing. Towards
  Gemini: Gemini 3+ models get ``thinkingLevel`` (``none`` -> ``minimal``,
  ``xhigh`` -> ``high``), older ones a budget (Google's own OpenAI mapping:
  low 1024, medium 8192, high 24576; minimal 512; none 0, or 128 for 2.5 Pro,
  which cannot stop thinking), with ``includeThoughts`` so reasoning reaches
  the client.
* **Safety settings**: dropped when converting, both ways. Chat has no such
  field, and inventing thresholds would change the account's safety posture;
  a Gemini client talking to a Gemini upstream is passed through untouched,
  settings included. ``cachedContent``, ``labels``, ``responseModalities``,
  ``speechConfig``, ``mediaResolution`` are dropped likewise.
* **Media**: ``inlineData`` <-> data URLs (images as ``image_url``, wav/mp3 as
  ``input_audio``, anything else as a ``file``); ``fileData`` <-> URL images
  (or a ``file`` whose ``file_id`` is the URI); the MIME type of a URL is
  guessed from its extension. Function responses' ``parts`` images follow the
  tool message as a user message.
"""

from .from_chat import chat_request_to_gemini
from .response import (
    chat_response_to_gemini,
    gemini_response_to_chat,
    observe_chunk,
    usage_from_gemini,
    usage_of_response,
    usage_to_gemini,
)
from .stream import ChatToCodeAssistStream, ChatToGeminiStream, GeminiToChatStream
from .to_chat import gemini_request_to_chat
from .wire import error_body

__all__ = [
    "ChatToCodeAssistStream",
    "ChatToGeminiStream",
    "GeminiToChatStream",
    "chat_request_to_gemini",
    "chat_response_to_gemini",
    "error_body",
    "gemini_request_to_chat",
    "gemini_response_to_chat",
    "observe_chunk",
    "usage_from_gemini",
    "usage_of_response",
    "usage_to_gemini",
]
