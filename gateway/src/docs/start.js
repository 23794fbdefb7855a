// Renders /openapi.json of this gateway, with "Try it out" sending
// requests to it: authorize with an API key (X-API-Key or Bearer) first.
window.addEventListener("load", function () {
  window.reference = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#reference",
    deepLinking: true,
    tryItOutEnabled: false,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
  });
});
