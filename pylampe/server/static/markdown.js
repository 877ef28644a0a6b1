// Markdown to DOM nodes for the model's answers: the subset chat models write (headings,
// paragraphs, emphasis, code, lists, quotes, tables, rules, links).
//
// Safe by construction: nothing is ever parsed as HTML. Every piece of text becomes a text node
// and every element is one of a fixed list created here, so "<script>" or "<img onerror=...>"
// in an answer is shown as those characters. Links keep only http(s) and mailto targets and
// open in a new tab without a referrer; images are not loaded (shown as links to them).

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)\s*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEPARATOR = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;
const LINK_SCHEMES = new Set(["http:", "https:", "mailto:"]);

// code span | image or link | strong | strong | strikethrough | emphasis | emphasis | bare URL | escape
const INLINE = new RegExp([
  "(`+)([^`]|[^`][\\s\\S]*?[^`])\\1(?!`)",
  "(!?)\\[([^\\]\\n]*)\\]\\(\\s*<?([^)\\s>]+)>?(?:\\s+\"[^\"]*\")?\\s*\\)",
  "\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*",
  "__(?=\\S)([\\s\\S]*?\\S)__(?!\\w)",
  "~~(?=\\S)([\\s\\S]*?\\S)~~",
  "\\*(?=[^\\s*])([\\s\\S]*?[^\\s*])\\*(?!\\*)",
  "(?<![\\w])_(?=[^\\s_])([\\s\\S]*?[^\\s_])_(?![\\w])",
  "(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"])",
  "\\\\([\\\\`*_{}\\[\\]()#+\\-.!|~>])",
].join("|"), "g");

function el(tag, children = []) {
  const node = document.createElement(tag);
  for (const child of children) node.append(child);
  return node;
}

/** A link to ``href`` when it is an absolute http(s) or mailto URL, else null. */
function safeLink(href, children) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  if (!LINK_SCHEMES.has(url.protocol)) return null;
  const a = el("a", children);
  a.href = url.href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  return a;
}

/** Inline Markdown of ``text`` as an array of nodes. */
export function inline(text) {
  const out = [];
  let last = 0;
  INLINE.lastIndex = 0;
  for (let m; (m = INLINE.exec(text)) !== null;) {
    if (m.index > last) out.push(text.slice(last, m.index));
    last = INLINE.lastIndex;
    const [whole, , code, bang, label, href, strong1, strong2, strike, em1, em2, url, escaped] = m;
    if (code !== undefined) {
      out.push(el("code", [code.length > 2 && code.startsWith(" ") && code.endsWith(" ") ? code.slice(1, -1) : code]));
    } else if (href !== undefined) {
      // an image becomes a link to it, labelled with its alt text
      const children = bang ? [label || href] : inline(label);
      out.push(safeLink(href, children) || whole);
    } else if (strong1 !== undefined || strong2 !== undefined) {
      out.push(el("strong", inline(strong1 ?? strong2)));
    } else if (strike !== undefined) {
      out.push(el("del", inline(strike)));
    } else if (em1 !== undefined || em2 !== undefined) {
      out.push(el("em", inline(em1 ?? em2)));
    } else if (url !== undefined) {
      out.push(safeLink(url, [url]) || url);
    } else {
      out.push(escaped);
    }
    INLINE.lastIndex = last; // the recursive calls above moved it
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** A paragraph's lines: soft line breaks kept, as chat answers mean them. */
function paragraph(lines) {
  const children = [];
  lines.forEach((line, i) => {
    if (i > 0) children.push(el("br"));
    children.push(...inline(line.trim()));
  });
  return el("p", children);
}

function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function table(header, rows) {
  const head = el("tr", cells(header).map((c) => el("th", inline(c))));
  const body = rows.map((r) => el("tr", cells(r).map((c) => el("td", inline(c)))));
  const wrap = el("div", [el("table", [el("thead", [head]), el("tbody", body)])]);
  wrap.className = "table";
  return wrap;
}

function startsBlock(line, next) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line)
    || (line.includes("|") && next !== undefined && TABLE_SEPARATOR.test(next));
}

/** Block-level Markdown of ``lines`` appended to ``parent``. */
function blocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i++;
    } else if ((m = FENCE.exec(line))) {
      // an unclosed fence (an answer still being written) runs to the end
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(m[1]); i++) body.push(lines[i]);
      i++;
      const code = el("code", [body.join("\n")]);
      if (m[2]) code.dataset.lang = m[2];
      parent.append(el("pre", [code]));
    } else if ((m = HEADING.exec(line))) {
      parent.append(el(`h${m[1].length}`, inline(m[2])));
      i++;
    } else if (RULE.test(line)) {
      parent.append(el("hr"));
      i++;
    } else if (QUOTE.test(line)) {
      const inner = [];
      for (; i < lines.length && (m = QUOTE.exec(lines[i])); i++) inner.push(m[1]);
      const quote = el("blockquote");
      blocks(inner, quote);
      parent.append(quote);
    } else if ((m = ITEM.exec(line))) {
      i = list(lines, i, parent);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_SEPARATOR.test(lines[i + 1])) {
      const rows = [];
      for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim(); i++) rows.push(lines[i]);
      parent.append(table(line, rows));
    } else {
      const text = [];
      for (; i < lines.length && lines[i].trim() && !(text.length && startsBlock(lines[i], lines[i + 1])); i++) {
        text.push(lines[i]);
      }
      parent.append(paragraph(text));
    }
  }
}

/** The list starting at ``lines[start]``; items' indented lines (nested lists too) are theirs. */
function list(lines, start, parent) {
  const first = ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const node = el(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
  let i = start;
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) break;
    const body = [m[3]];
    for (i++; i < lines.length; i++) {
      const next = lines[i];
      const nested = ITEM.exec(next);
      if (nested && nested[1].length <= indent) break;
      if (!next.trim()) {
        // a blank line ends the list unless an indented line follows
        if (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1])) { body.push(""); continue; }
        break;
      }
      if (!/^\s/.test(next) && startsBlock(next, lines[i + 1])) break;
      body.push(next.replace(new RegExp(`^ {0,${indent + 4}}`), ""));
    }
    const li = el("li");
    if (body.length === 1) li.append(...inline(body[0]));
    else blocks(body, li);
    // a one-paragraph item is shown without the paragraph's margins
    if (li.childNodes.length === 1 && li.firstChild.nodeName === "P") li.replaceChildren(...li.firstChild.childNodes);
    node.append(li);
  }
  parent.append(node);
  return i;
}

/** ``text`` rendered as Markdown into a new DocumentFragment. */
export function render(text) {
  const fragment = document.createDocumentFragment();
  blocks(String(text).replace(/\r\n?/g, "\n").split("\n"), fragment);
  return fragment;
}
