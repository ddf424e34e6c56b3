// How many formulas of real posts the page typesets: every `span.math-container` of the given
// Stack Exchange Posts.xml or ARQMath topic files, split and typeset as the page does
// (crates/mathrank-server/assets/math.js with the vendored KaTeX). Prints the counts and the
// commonest errors (a formula KaTeX refuses is shown as its raw source).
// Usage: node scripts/katex-coverage.js FILE.xml...   (e.g. ../shared/data/stackexchange/*.xml)
'use strict';
const fs = require('fs');
const path = require('path');
const assets = path.join(__dirname, '../crates/mathrank-server/assets');
const katex = require(path.join(assets, 'katex/katex.min.js'));
const MathText = require(path.join(assets, 'math.js'));

const entities = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };
const decode = (text) =>
  text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, name) => {
    if (name[0] !== '#') return entities[name] ?? whole;
    return String.fromCodePoint(name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10));
  });

const formulas = [];
for (const file of process.argv.slice(2)) {
  // Post bodies are HTML inside an XML attribute (or an element): decode until the spans show.
  let text = fs.readFileSync(file, 'utf8');
  for (let round = 0; round < 2 && !text.includes('<span class="math-container">'); round++) text = decode(text);
  for (const match of text.matchAll(/<span class="math-container"[^>]*>([\s\S]*?)<\/span>/g)) {
    formulas.push(decode(match[1]));
  }
}
let parts = 0;
let refused = 0;
const reasons = new Map();
for (const formula of formulas) {
  // The model's text wraps a container's math in `$..$` unless it starts with `$`.
  const text = formula.startsWith('$') ? formula : '$' + formula + '$';
  const macros = MathText.baseMacros();
  for (const part of MathText.split(text).parts) {
    if (part.math === undefined) continue;
    parts++;
    const why = MathText.attempt((math, options) => katex.renderToString(math, options), part, macros);
    if (why !== null) {
      refused++;
      const reason = why.replace(/ at position[\s\S]*$/, '').replace(/^KaTeX parse error: /, '').slice(0, 70);
      reasons.set(reason, (reasons.get(reason) || 0) + 1);
    }
  }
}
console.log(`KaTeX ${katex.version}: ${formulas.length} math containers, ${parts} formulas, ${parts - refused} typeset, ${refused} shown as raw source`);
for (const [reason, count] of [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${count}  ${reason}`);
