// What the page keeps in the browser (localStorage), so that a reload finds it: the
// conversation (the document's text included: it is resent with every question, as the
// OpenAI API wants) and the settings. Nothing of it is kept on the server.

const CONVERSATION = "pylampe.conversation.v1";
const SETTINGS = "pylampe.settings.v1";

export const DEFAULT_SETTINGS = { maxTokens: 1024, temperature: 0.2, theme: "auto", model: "" };

function load(key, fallback) {
  try {
    return { ...fallback, ...JSON.parse(localStorage.getItem(key) || "{}") };
  } catch {
    return { ...fallback };
  }
}

/** Save ``value``; false when the browser refuses (storage full: a very long document). */
function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false;
  }
}

/** ``{document, turns}``: document is null or what /ui/documents answered; turns are
 * ``{question, answer, stats, stopped, error}``. */
export function emptyConversation() {
  return { document: null, turns: [] };
}

export const loadConversation = () => load(CONVERSATION, emptyConversation());
export const saveConversation = (conversation) => save(CONVERSATION, conversation);
export const loadSettings = () => load(SETTINGS, DEFAULT_SETTINGS);
export const saveSettings = (settings) => save(SETTINGS, settings);

/** The chat messages of ``conversation`` followed by ``question``: the document and a blank line
 * open the first user message (how the server and ``pylampe chat`` lay a document out, and
 * what /ui/documents has read ahead), then each answered turn. */
export function messages(conversation, question) {
  const out = [];
  // a turn stopped or failed before any text is left out, as if it had not been asked
  const asked = conversation.turns.filter((t) => t.answer || (!t.error && !t.stopped));
  for (const turn of [...asked, { question }]) {
    const content = out.length === 0 && conversation.document
      ? `${conversation.document.text}\n\n${turn.question}` : turn.question;
    out.push({ role: "user", content });
    if (turn.answer !== undefined) out.push({ role: "assistant", content: turn.answer });
  }
  return out;
}
