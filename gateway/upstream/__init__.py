"""Where allowed messages go: real HTTP upstreams and the built-in sandbox."""
