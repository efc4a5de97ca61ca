"""From listed inputs to engine requests: discovery and reading (sources, listing), rendering pages
(pages, in a child process: render_guard), and building the requests (request)."""
