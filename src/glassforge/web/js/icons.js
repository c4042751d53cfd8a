// Inline SVG icons (drawn here): buttons look the same whether or not the system has an emoji font.

const PATHS = {
  dice: '<rect x="3" y="3" width="18" height="18" rx="4" fill="none" stroke="currentColor" stroke-width="2"/><circle cx="8" cy="8" r="1.7"/><circle cx="16" cy="8" r="1.7"/><circle cx="12" cy="12" r="1.7"/><circle cx="8" cy="16" r="1.7"/><circle cx="16" cy="16" r="1.7"/>',
  reuse: '<path d="M19.5 12a7.5 7.5 0 1 1-2.2-5.3" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"/><path d="M19.5 3.5v5h-5" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round"/>',
  up: '<path d="M2.5 10h4v11h-4z"/><path d="M8.5 10.2 12.8 3c1.3 0 2.2 1 2.2 2.2V9h4.6c1.2 0 2 1 1.8 2.2l-1.5 7.6c-.2 1.1-1.1 1.8-2.1 1.8H8.5z"/>',
  down: '<g transform="rotate(180 12 12)"><path d="M2.5 10h4v11h-4z"/><path d="M8.5 10.2 12.8 3c1.3 0 2.2 1 2.2 2.2V9h4.6c1.2 0 2 1 1.8 2.2l-1.5 7.6c-.2 1.1-1.1 1.8-2.1 1.8H8.5z"/></g>',
  play: '<path d="M7 4.5v15l12.5-7.5z"/>',
  pause: '<path d="M6 4.5h4.2v15H6zM13.8 4.5H18v15h-4.2z"/>',
};

/** An icon as SVG markup (aria-hidden: the button carries the label). */
export function icon(name, size = 18) {
  return `<svg viewBox="0 0 24 24" width="${size}" height="${size}" fill="currentColor" aria-hidden="true" focusable="false">${PATHS[name]}</svg>`;
}

/** Fill every element with data-icon="name" with its icon. */
export function applyIcons(root = document) {
  for (const node of root.querySelectorAll("[data-icon]")) node.innerHTML = icon(node.dataset.icon);
}
