"""The callback receiver process: it faces the internet, so it reaches neither cloud/ nor controller/."""
