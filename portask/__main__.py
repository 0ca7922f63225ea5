from portask.cli import main

raise SystemExit(main())
