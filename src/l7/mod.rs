//! L7 building blocks (not yet wired into the worker): HTTP/1.1 request
//! heads and bodies, sans-I/O, and request routing. See docs/L7-DESIGN.md.
