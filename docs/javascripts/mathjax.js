// MathJax's configuration, read by docs/javascripts/vendor/mathjax/tex-svg.js when it loads (after this file).
// arithmatex wraps the pages' $...$ and $$...$$ in \( \) and \[ \] inside elements of class "arithmatex";
// MathJax typesets those elements only. SVG output carries its own glyphs: no web fonts to fetch.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
  svg: { fontCache: "global" },
};

// With instant navigation a page can change without a reload: typeset it again then. On the first page
// MathJax may not have loaded yet; it typesets that page itself once it has.
document$.subscribe(() => {
  if (typeof MathJax.typesetPromise === "function") {
    MathJax.typesetClear();
    MathJax.typesetPromise();
  }
});
