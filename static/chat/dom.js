// @ts-check
// The one DOM helper the chat pages share.

/**
 * A new element: `attrs` set as attributes (`className` as the class, `true` as an empty
 * attribute), `text` as its text (never parsed as markup).
 * @param {string} tag
 * @param {Record<string, string | number | boolean>} [attrs]
 * @param {string} [text]
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "className") node.className = String(value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}
