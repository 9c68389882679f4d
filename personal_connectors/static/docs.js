/* Starts Swagger UI on /docs from the service's own copy of it (no CDN), reading the OpenAPI
 * document's address from the page, so that no inline script is needed under the page's CSP. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Keys typed into Authorize stay in this tab's memory, never in storage.
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
})();
