"""`transformer-mt serve`: the batcher (`batcher`, no web import), what the routes do with it
(`service`), the routers of each API (`libretranslate`, `api_v1`), the app (`app`, with the
page in `static/`), error answers (`middleware`) and the threads and signals (`runner`)."""
