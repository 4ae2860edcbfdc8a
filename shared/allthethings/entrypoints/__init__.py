"""Entry-point helpers: what the Lambda handlers share to translate a request into a service
call and its result into a reply — the HTTP resolver and the one error-to-status mapping, the
HTML pages, the OpenAPI document, the webhook receiver and the logger. Nothing here decides
anything a service decides."""
