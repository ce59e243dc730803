"""How the client reaches a registry: connections, TLS, the transport's origin choice, authentication,
credentials, retries, and the threads that move blob bodies over pooled connections."""
