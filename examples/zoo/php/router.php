<?php
// php -S 127.0.0.1:PORT router.php: every request, whatever its path and
// method, runs this script (a front controller, as frameworks deploy).
require __DIR__ . '/record.php';
tok_zoo_record('router');
