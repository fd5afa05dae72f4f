"""Provider-shaped requests in, normalized messages out; decisions back in the provider's shape."""
