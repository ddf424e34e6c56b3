// Typesets the LaTeX in post text with KaTeX, the way Math Stack Exchange's MathJax reads it:
// `$..$` and `\(..\)` inline, `$$..$$`, `\[..\]` and bare `\begin{env}..\end{env}` displayed,
// `\$` a literal dollar, and a delimiter inside braces not closing the formula.
//
// Post text is never parsed as HTML: text goes into text nodes, formulas through
// katex.render (DOM building, CSSOM styles), and a formula KaTeX refuses stays its raw source.
// Every input is bounded: formulas per block, characters per formula, the scanning work, and
// the wall time spent typesetting one block; past a bound the rest stays plain text.
//
// Loaded by the page (as `window.MathText`) and by node (scripts/katex-coverage.js).
(function (root, factory) {
  'use strict';
  const api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.MathText = api;
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const LIMITS = Object.freeze({
    // Formulas typeset in one block (an answer, a title, the preview).
    formulas: 400,
    // Characters of one formula; a longer one stays raw.
    formulaChars: 4000,
    // Openers whose closing delimiter was not found: each costs a bounded scan.
    failedOpeners: 400,
    // Milliseconds of typesetting per block; the rest stays raw.
    budgetMs: 300,
    // Characters shown of one block (Stack Exchange caps a post at 30,000).
    textChars: 60000,
  });

  // KaTeX's options: nothing a post writes may link, load, style or grow without bound.
  const KATEX_OPTIONS = Object.freeze({
    throwOnError: true,
    trust: false,
    strict: 'ignore',
    maxSize: 20,
    maxExpand: 1000,
    globalGroup: true,
    output: 'htmlAndMathml',
  });

  // Math SE's MathJax idioms that KaTeX lacks.
  function baseMacros() {
    return {
      // MathJax loads an extension; KaTeX has its commands built in.
      '\\require': function (context) {
        context.consumeArgs(1);
        return '';
      },
      '\\mbox': '\\text{#1}',
    };
  }

  // Where `close` ends a formula that starts at `from`: braces must balance and `\x` is
  // skipped. Scans at most `formulaChars`; -1 when not found.
  function findClose(text, from, close) {
    const end = Math.min(text.length, from + LIMITS.formulaChars + close.length);
    let depth = 0;
    for (let j = from; j < end; j++) {
      const c = text[j];
      if (c === '\\') {
        if (depth === 0 && text.startsWith(close, j)) return j;
        j++;
      } else if (c === '{') {
        depth++;
      } else if (c === '}') {
        if (depth > 0) depth--;
      } else if (depth === 0 && text.startsWith(close, j)) {
        return j;
      }
    }
    return -1;
  }

  // The end of `\begin{name}..\end{name}` starting at `from` (nested ones of the same name
  // counted), or -1.
  function findEnvironmentEnd(text, from, name) {
    const begin = '\\begin{' + name + '}';
    const end = '\\end{' + name + '}';
    const limit = Math.min(text.length, from + LIMITS.formulaChars);
    let depth = 0;
    let j = from;
    while (j < limit) {
      if (text.startsWith(begin, j)) {
        depth++;
        j += begin.length;
      } else if (text.startsWith(end, j)) {
        depth--;
        j += end.length;
        if (depth === 0) return j;
      } else {
        j++;
      }
    }
    return -1;
  }

  // The opener at `i`, if any: [open length, close delimiter, display].
  function opener(text, i) {
    const c = text[i];
    if (c === '$') return text[i + 1] === '$' ? [2, '$$', true] : [1, '$', false];
    if (c !== '\\') return null;
    const next = text[i + 1];
    if (next === '[') return [2, '\\]', true];
    if (next === '(') return [2, '\\)', false];
    return null;
  }

  // Splits text into parts: {text} or {math, source, display}. `unclosed` is where the first
  // opener after the last formula failed to close (a snippet cut mid-formula), or -1.
  function split(text) {
    const parts = [];
    let plain = '';
    let i = 0;
    let formulas = 0;
    let failures = 0;
    let unclosed = -1;
    const flush = () => {
      if (plain) parts.push({ text: plain });
      plain = '';
    };
    while (i < text.length) {
      if (formulas >= LIMITS.formulas || failures >= LIMITS.failedOpeners) {
        plain += text.slice(i);
        break;
      }
      const c = text[i];
      if (c === '\\' && text[i + 1] === '$') {
        plain += '$';
        i += 2;
        continue;
      }
      if (c === '\\' && text[i + 1] === '\\') {
        plain += '\\\\';
        i += 2;
        continue;
      }
      if (c === '\\' && text.startsWith('\\begin{', i)) {
        const close = text.indexOf('}', i + 7);
        const name = close > 0 && close - i < 40 ? text.slice(i + 7, close) : '';
        const end = /^[A-Za-z]+\*?$/.test(name) ? findEnvironmentEnd(text, i, name) : -1;
        if (end > 0) {
          flush();
          const source = text.slice(i, end);
          parts.push({ math: source, source: source, display: true });
          formulas++;
          unclosed = -1;
          i = end;
          continue;
        }
      }
      const open = opener(text, i);
      if (open) {
        const [length, closeWith, display] = open;
        const close = findClose(text, i + length, closeWith);
        if (close >= 0 && !text.slice(i + length, close).trim()) {
          // `$$$$` or `\(\)`: nothing to typeset, shown as written.
          plain += text.slice(i, close + closeWith.length);
          i = close + closeWith.length;
          continue;
        }
        if (close >= 0) {
          flush();
          const source = text.slice(i, close + closeWith.length);
          parts.push({ math: text.slice(i + length, close), source: source, display: display });
          formulas++;
          unclosed = -1;
          i = close + closeWith.length;
          continue;
        }
        failures++;
        if (unclosed < 0) unclosed = parts.reduce((n, p) => n + (p.text || p.source).length, 0) + plain.length;
        plain += text.slice(i, i + length);
        i += length;
        continue;
      }
      plain += c;
      i++;
    }
    flush();
    return { parts: parts, unclosed: unclosed };
  }

  const DISPLAY_ONLY = /only in display mode|works only in display/;

  // Typesets one formula with `renderOne(math, options)` (katex.render into a node, or
  // katex.renderToString); returns null when it worked, else why not.
  function attempt(renderOne, part, macros) {
    if (part.math.length > LIMITS.formulaChars) return 'formula too long to typeset';
    const options = Object.assign({}, KATEX_OPTIONS, { displayMode: part.display, macros: macros });
    try {
      renderOne(part.math, options);
      return null;
    } catch (first) {
      // MathJax typesets `$\begin{align}..\end{align}$` inline; KaTeX wants display mode.
      if (!part.display && DISPLAY_ONLY.test(String(first && first.message))) {
        try {
          renderOne(part.math, Object.assign(options, { displayMode: true }));
          return null;
        } catch (_) {
          // fall through to the first error
        }
      }
      return first && first.message ? first.message : String(first);
    }
  }

  // One formula into `node`; on failure `node` holds its raw source. Returns whether typeset.
  function typeset(katex, node, part, macros) {
    const why = attempt((math, options) => katex.render(math, node, options), part, macros);
    return why === null || raw(node, part, why);
  }

  function raw(node, part, why) {
    node.textContent = part.source;
    node.className = 'math-error';
    node.title = String(why).slice(0, 300);
    return false;
  }

  // Appends `text` to `container`, typeset. With `snippet`, a formula cut by the snippet's
  // end is dropped (the snippet ends in "…" anyway). Returns counts for tests and callers.
  function render(container, text, opts) {
    const katex = (opts && opts.katex) || (typeof self !== 'undefined' ? self.katex : undefined);
    const doc = container.ownerDocument;
    text = String(text);
    const hidden = Math.max(0, text.length - LIMITS.textChars);
    if (hidden) text = text.slice(0, LIMITS.textChars);
    let { parts, unclosed } = split(text);
    if (opts && opts.snippet && unclosed >= 0) parts = cut(parts, unclosed);
    const macros = baseMacros();
    const started = Date.now();
    const stats = { formulas: 0, typeset: 0, raw: 0 };
    for (const part of parts) {
      if (part.text !== undefined) {
        container.appendChild(doc.createTextNode(part.text));
        continue;
      }
      stats.formulas++;
      const node = doc.createElement(part.display ? 'div' : 'span');
      node.className = part.display ? 'math math-display' : 'math';
      const inTime = Date.now() - started < LIMITS.budgetMs;
      if (katex && inTime && typeset(katex, node, part, macros)) stats.typeset++;
      else {
        if (!node.textContent) raw(node, part, katex ? 'typesetting time for this text is used up' : 'KaTeX is not loaded');
        stats.raw++;
      }
      container.appendChild(node);
    }
    if (hidden) {
      const note = doc.createElement('span');
      note.className = 'cut-note';
      note.textContent = ' … (' + hidden.toLocaleString('en') + ' more characters not shown)';
      container.appendChild(note);
    }
    stats.hiddenChars = hidden;
    return stats;
  }

  // The parts before character `at`, the last text part shortened, then " …".
  function cut(parts, at) {
    const kept = [];
    let seen = 0;
    for (const part of parts) {
      const length = (part.text !== undefined ? part.text : part.source).length;
      if (seen + length <= at) {
        kept.push(part);
        seen += length;
        continue;
      }
      if (part.text !== undefined) kept.push({ text: part.text.slice(0, at - seen).replace(/\s+$/, '') + ' …' });
      break;
    }
    return kept;
  }

  return {
    LIMITS: LIMITS,
    KATEX_OPTIONS: KATEX_OPTIONS,
    baseMacros: baseMacros,
    split: split,
    attempt: attempt,
    render: render,
  };
});
