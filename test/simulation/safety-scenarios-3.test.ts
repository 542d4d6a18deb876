import { describeSafetyShard } from '../support/safety-scenarios';

describeSafetyShard(2);
