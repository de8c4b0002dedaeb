// Runs before the page is drawn (a classic script in <head>), so that a chosen
// theme shows from the first frame. No choice: the system's (prefers-color-scheme).
(function () {
  try {
    var theme = localStorage.getItem("pingchat.theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (e) {
    // storage disabled: the system's theme
  }
})();
