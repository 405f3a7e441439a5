// Starts Swagger UI on /docs (vmportal/web/docs.py). The settings come from this script tag's data
// attributes, so the page needs no inline script and can forbid them in its CSP.
(function () {
  "use strict";
  var data = document.currentScript.dataset;
  var config = JSON.parse(data.parameters || "{}");
  config.url = data.openapiUrl;
  config.oauth2RedirectUrl = window.location.origin + data.oauth2RedirectUrl;
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  window.addEventListener("DOMContentLoaded", function () {
    var ui = SwaggerUIBundle(config);
    if (data.initOauth) {
      ui.initOAuth(JSON.parse(data.initOauth));
    }
    window.ui = ui;
  });
})();
