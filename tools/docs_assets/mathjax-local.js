// MathJax 2 settings for this site, loaded by the ?config=...,local/qllama of mkdocs.yml's custom_mathjax_url.
// jupyter-server-mathjax ships only the STIX-Web fonts, so HTML-CSS output must not look for the TeX ones;
// and its placeholder font MathJax_Blank points at url('about:blank'), which Chromium refuses (a console
// error on every page with math), so it becomes a local() font that needs no request.
MathJax.Hub.Config({
  "HTML-CSS": {
    availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
    styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}
  }
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/qllama.js");
