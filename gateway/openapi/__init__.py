"""The OpenAPI document: what each route declares, the schemas, the route that serves it."""
